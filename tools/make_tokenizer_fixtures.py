#!/usr/bin/env python3
"""Reference data for mlabench's tokenizers, made with Hugging Face `tokenizers` and `sentencepiece`.

Runs on the GPU machine (tokenizers 0.23, sentencepiece 0.2, transformers 5.17 there; a CPU is enough). Reads
tests/data/tokenizer/corpus.jsonl.gz (tools/make_tokenizer_corpus.py) and the DeepSeek-V2 tokenizer, trains
small tokenizers in the styles the engine must read, and writes under --out:

  tokenizer/<name>/tokenizer.json (+ tokenizer_config.json)   the trained tokenizers
  tokenizer/sentencepiece-bpe/tokenizer.model                  a SentencePiece BPE model (byte fallback)
  tokenizer/ref/<name>.json.gz                                 per corpus document: [token count,
        FNV-1a-64 of the ids (uint32 little-endian), FNV-1a-64 of decode(ids), of decode(ids,
        skip_special_tokens=True), 1 if decode(encode(x)) == x else 0]; plus the full ids of the first
        documents with and without special tokens, for debugging
  tokenizer/chat_templates.json                                transformers' rendering of conversations with
                                                               the built-in chat templates
  models/mlabench-tiny-dsv2/tokenizer.json, tokenizer_config.json   the bundled model's tokenizer (2048 ids)

Usage: python3 tools/make_tokenizer_fixtures.py --deepseek DIR --out DIR
"""

import argparse
import gzip
import json
import os
import shutil
import tempfile

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

DEEPSEEK_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}"
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
N_FULL_IDS = 40  # documents whose full ids are stored, for debugging a mismatch


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def ids_hash(ids):
    return fnv1a64(b"".join(int(i).to_bytes(4, "little") for i in ids))


def load_corpus(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def bpe_trainer(vocab_size, **kw):
    return trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, min_frequency=2, **kw)


def train_tiny_dsv2(docs, deepseek):
    """The bundled model's tokenizer: DeepSeek-V2's pipeline (its pre-tokenizer splits, byte-level BPE,
    BOS template) with 2,048 ids, BOS 0 and EOS 1 as the model's config says."""
    ds = json.load(open(os.path.join(deepseek, "tokenizer.json"), encoding="utf-8"))
    tok = Tokenizer(models.BPE())
    splits = [pre_tokenizers.Split(Regex(p["pattern"]["Regex"]), p["behavior"].lower(), invert=p["invert"])
              for p in ds["pre_tokenizer"]["pretokenizers"] if p["type"] == "Split"]
    tok.pre_tokenizer = pre_tokenizers.Sequence(splits + [pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                                   use_regex=False)])
    bos, eos = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
    tok.train_from_iterator(docs, bpe_trainer(2048, special_tokens=[bos, eos],
                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                       special_tokens=[(bos, 0)])
    assert tok.token_to_id(bos) == 0 and tok.token_to_id(eos) == 1 and tok.get_vocab_size() == 2048
    config = {"add_bos_token": True, "add_eos_token": False, "bos_token": bos, "eos_token": eos,
              "model_max_length": 2560, "tokenizer_class": "LlamaTokenizerFast", "chat_template": DEEPSEEK_CHAT_TEMPLATE}
    return tok, config


def train_llama3_style(docs):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), "isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.train_from_iterator(docs, bpe_trainer(3000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok.add_special_tokens(specials)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    tok.decoder = decoders.ByteLevel()
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3_CHAT_TEMPLATE,
              "tokenizer_class": "PreTrainedTokenizerFast"}
    return tok, config


def train_llama2_style(docs):
    """SentencePiece-converted style (Llama-2, Mistral v0.1): Prepend + Replace normalizer, no pre-tokenizer,
    byte-fallback BPE with <0xXX> entries in the vocabulary, <unk>/<s>/</s> special."""
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    trainer_tok.normalizer = normalizers.Replace(" ", "▁")
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer_tok.train_from_iterator(docs, bpe_trainer(2600, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                                      limit_alphabet=150))
    j = json.loads(trainer_tok.to_str())
    # Byte tokens live in the model vocabulary only, as in real Llama checkpoints.
    j["added_tokens"] = [t for t in j["added_tokens"] if not t["content"].startswith("<0x")]
    j["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                           {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    j["pre_tokenizer"] = None
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    tok = Tokenizer.from_str(json.dumps(j))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": LLAMA2_CHAT_TEMPLATE,
              "add_bos_token": True, "tokenizer_class": "LlamaTokenizerFast", "legacy": True}
    return tok, config


def variant(base, **components):
    """A copy of `base` with some pipeline components replaced (JSON dicts)."""
    j = json.loads(base.to_str())
    j.update(components)
    return Tokenizer.from_str(json.dumps(j))


def train_wordpiece_mix(docs):
    """Exercises the rest: NFKC, regex Replace, Lowercase, Strip; Split by string and regex with every
    behaviour and invert; Digits; Whitespace; continuing_subword_prefix and unk; added tokens with lstrip,
    rstrip, single_word and normalized (matched after normalisation)."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", fuse_unk=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase(), normalizers.Strip(left=True, right=True)])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("-", "merged_with_next"),
        pre_tokenizers.Split(Regex("[,;]"), "removed"),
        pre_tokenizers.Split(Regex(r"\."), "merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[!?]+"), "contiguous"),
        pre_tokenizers.Split(Regex(r"[\p{Han}\p{Hangul}]+"), "isolated", invert=True),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Whitespace()])
    tok.train_from_iterator(docs, bpe_trainer(2500, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                                              continuing_subword_prefix="##", limit_alphabet=400))
    tok.add_tokens([AddedToken("[MASK]", lstrip=True, special=True, normalized=False),
                    AddedToken("[SEP]", rstrip=True, special=True, normalized=False),
                    AddedToken("hello world", single_word=True, normalized=True),
                    AddedToken("ＡＢＣ", normalized=True),  # matched as "abc" after NFKC + lowercase
                    AddedToken("ö", normalized=True),
                    AddedToken("<s>", special=True, normalized=False, single_word=True)])
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.Sequence([decoders.Replace("##", ""), decoders.Replace(Regex(r"\[(sep|cls)\]"), "|"),
                                     decoders.Strip(content=" ", left=1, right=0)])  # right > 0 panics in HF on empty tokens
    return tok, {"tokenizer_class": "PreTrainedTokenizerFast"}


def train_bytelevel_mix(docs):
    """ByteLevel with its own regex and add_prefix_space, NFC and Prepend, a MergedWithPrevious split and an
    inverted Isolated split, an lstrip/rstrip special token."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Prepend("»")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+"), "merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[0-9]+"), "isolated", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)])
    tok.train_from_iterator(docs, bpe_trainer(2200, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_tokens([AddedToken("<|tool|>", lstrip=True, rstrip=True, special=True, normalized=False)])
    tok.decoder = decoders.ByteLevel()
    return tok, {"tokenizer_class": "PreTrainedTokenizerFast"}


def references(tok, docs, decode=True):
    rows, full_plain, full_special = [], [], []
    for i, text in enumerate(docs):
        ids = tok.encode(text, add_special_tokens=False).ids
        dec = tok.decode(ids, skip_special_tokens=False)
        dec_skip = tok.decode(ids, skip_special_tokens=True)
        rows.append([len(ids), ids_hash(ids), fnv1a64(dec.encode("utf-8", "surrogatepass")),
                     fnv1a64(dec_skip.encode("utf-8", "surrogatepass")), int(dec == text)])
        if i < N_FULL_IDS:
            full_plain.append(ids)
            full_special.append(tok.encode(text, add_special_tokens=True).ids)
    return {"rows": rows, "full_ids": full_plain, "full_ids_add_special": full_special}


def spm_references(sp, docs):
    rows, full = [], []
    for i, text in enumerate(docs):
        ids = sp.encode(text, out_type=int)
        dec = sp.decode(ids)
        rows.append([len(ids), ids_hash(ids), fnv1a64(dec.encode("utf-8")), fnv1a64(dec.encode("utf-8")),
                     int(dec == text)])
        if i < N_FULL_IDS:
            full.append(ids)
    return {"rows": rows, "full_ids": full, "full_ids_add_special": [[sp.bos_id()] + f for f in full]}


def write_ref(out, name, ref, meta):
    os.makedirs(os.path.join(out, "tokenizer", "ref"), exist_ok=True)
    ref = {"tokenizer": name, **meta, **ref}
    with open(os.path.join(out, "tokenizer", "ref", f"{name}.json.gz"), "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as g:
            g.write(json.dumps(ref, separators=(",", ":")).encode("utf-8"))
    n = sum(r[0] for r in ref["rows"])
    rt = sum(r[4] for r in ref["rows"])
    print(f"{name:24s} {n:8d} tokens over {len(ref['rows'])} documents; decode(encode(x)) == x on {rt}")


def save_tokenizer(tok, config, folder):
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    if config is not None:
        with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)


def chat_template_fixtures(out, toks):
    from transformers import PreTrainedTokenizerFast

    conversations = [
        [{"role": "user", "content": "Hello!"}],
        [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "  What is 2+2?\n"},
         {"role": "assistant", "content": " 4 "}, {"role": "user", "content": "And 3+3? 你好"}],
        [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": "Autumn moonlight—\na worm digs"},
         {"role": "user", "content": "<s> literal </s> text"}],
    ]
    cases = []
    for name, (tok, config) in toks.items():
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=config.get("bos_token"),
                                       eos_token=config.get("eos_token"))
        fast.chat_template = config["chat_template"]
        for conv in conversations:
            for gen in (False, True):
                text = fast.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
                ids = fast.apply_chat_template(conv, tokenize=True, add_generation_prompt=gen)
                if hasattr(ids, "input_ids") or isinstance(ids, dict):
                    ids = ids["input_ids"]
                cases.append({"tokenizer": name, "messages": conv, "add_generation_prompt": gen, "text": text,
                              "ids": list(ids)})
    with open(os.path.join(out, "tokenizer", "chat_templates.json"), "w", encoding="utf-8") as f:
        json.dump({"reference": "transformers apply_chat_template (jinja2)", "cases": cases}, f, ensure_ascii=False,
                  indent=1)
    print(f"chat templates: {len(cases)} renderings")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deepseek", required=True, help="folder with DeepSeek-V2's tokenizer.json")
    ap.add_argument("--corpus", default="tests/data/tokenizer/corpus.jsonl.gz")
    ap.add_argument("--out", required=True, help="output root (tokenizer/ and models/ inside)")
    args = ap.parse_args()
    docs = load_corpus(args.corpus)
    meta = {"reference": f"tokenizers {tokenizers.__version__}", "corpus_documents": len(docs)}
    print(f"tokenizers {tokenizers.__version__}; corpus {len(docs)} documents")

    ds = Tokenizer.from_file(os.path.join(args.deepseek, "tokenizer.json"))
    write_ref(args.out, "deepseek-v2", references(ds, docs), meta)

    trained = {}
    tiny, tiny_cfg = train_tiny_dsv2(docs, args.deepseek)
    save_tokenizer(tiny, tiny_cfg, os.path.join(args.out, "models", "mlabench-tiny-dsv2"))
    write_ref(args.out, "mlabench-tiny-dsv2", references(tiny, docs), meta)
    trained["mlabench-tiny-dsv2"] = (tiny, tiny_cfg)

    l3, l3_cfg = train_llama3_style(docs)
    l2, l2_cfg = train_llama2_style(docs)
    metaspace_first = variant(l2, normalizer=None,
                              pre_tokenizer={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                                             "split": False},
                              decoder={"type": "Sequence", "decoders": [
                                  {"type": "ByteFallback"},
                                  {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
                                  {"type": "Fuse"}]})
    metaspace_always = variant(l2, normalizer={"type": "Lowercase"},
                               pre_tokenizer={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                                              "split": True},
                               decoder={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                                        "split": True})
    wp, wp_cfg = train_wordpiece_mix(docs)
    bl, bl_cfg = train_bytelevel_mix(docs)
    for name, tok, cfg in [("llama3-style", l3, l3_cfg), ("llama2-style", l2, l2_cfg),
                           ("metaspace-first", metaspace_first, {"bos_token": "<s>", "eos_token": "</s>"}),
                           ("metaspace-always", metaspace_always, None), ("wordpiece-mix", wp, wp_cfg),
                           ("bytelevel-mix", bl, bl_cfg)]:
        save_tokenizer(tok, cfg, os.path.join(args.out, "tokenizer", name))
        write_ref(args.out, name, references(tok, docs), meta)
    trained["llama3-style"] = (l3, l3_cfg)
    trained["llama2-style"] = (l2, l2_cfg)

    import sentencepiece as spm
    work = tempfile.mkdtemp()
    with open(os.path.join(work, "corpus.txt"), "w", encoding="utf-8") as f:
        for d in docs:
            for line in d.splitlines():
                if line.strip():
                    f.write(line + "\n")
    spm.SentencePieceTrainer.train(input=os.path.join(work, "corpus.txt"), model_prefix=os.path.join(work, "sp"),
                                   model_type="bpe", vocab_size=2000, byte_fallback=True, character_coverage=0.995,
                                   num_threads=8, minloglevel=2, max_sentence_length=16384)
    sp_dir = os.path.join(args.out, "tokenizer", "sentencepiece-bpe")
    os.makedirs(sp_dir, exist_ok=True)
    shutil.copy(os.path.join(work, "sp.model"), os.path.join(sp_dir, "tokenizer.model"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(sp_dir, "tokenizer.model"))
    write_ref(args.out, "sentencepiece-bpe", spm_references(sp, docs),
              {"reference": f"sentencepiece {spm.__version__}", "corpus_documents": len(docs)})

    chat_template_fixtures(args.out, {"mlabench-tiny-dsv2": (tiny, tiny_cfg), "llama3-style": (l3, l3_cfg),
                                      "llama2-style": (l2, l2_cfg)})


if __name__ == "__main__":
    main()
