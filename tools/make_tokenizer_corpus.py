#!/usr/bin/env python3
"""Builds the tokenizer test corpus: tests/data/tokenizer/corpus.jsonl.gz, one {"text": ...} per document.

About 1.3 MB of text mixing what real prompts hold and what breaks tokenizers:
  - real text from the local dataset mirror (../shared/datasets): Paul Graham essays (English), C-Eval
    questions (Chinese), MMLU questions, GSM8K problems (digits, arithmetic), HumanEval (Python code);
  - seeded synthetic text: Korean, Cyrillic, Greek, Arabic, Hebrew, Thai, Devanagari, Japanese, emoji (ZWJ
    sequences, skin tones, flags), runs of spaces / tabs / newlines / CRLF, Unicode spaces (NBSP, U+3000,
    NEL...), digit runs and numbers, NFC and NFD accents, combining marks, fullwidth forms, and the special
    token strings of the DeepSeek, Llama-2 and Llama-3 vocabularies, whole and broken.
Only the Python standard library; deterministic for a given mirror. The mirror is read, never committed: only
the sampled text is.

Usage: python3 tools/make_tokenizer_corpus.py [--shared ../shared] [--out tests/data/tokenizer/corpus.jsonl.gz]
"""

import argparse
import csv
import gzip
import io
import json
import os
import random
import zipfile

SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<|begin_of_text|>", "<|end_of_text|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<s>", "</s>", "<unk>", "[INST]", "[/INST]",
            "<<SYS>>", "<mask>", "<pad>"]
BROKEN_SPECIALS = ["<｜begin▁of", "sentence｜>", "<|begin_of_", "<s", "/s>", "<<SYS", "|>", "<|", "▁"]

KOREAN_WORDS = ["안녕하세요", "감사합니다", "대한민국", "서울", "컴퓨터", "프로그래밍", "언어", "모델", "학습", "데이터",
                "한국어", "문장", "토큰", "인공지능", "연구", "결과", "실험", "사람", "시간", "오늘", "내일", "날씨"]
RUSSIAN_WORDS = ["привет", "мир", "Москва", "язык", "модель", "данные", "обучение", "результат", "время",
                 "человек", "работа", "Съешь", "же", "ещё", "этих", "мягких", "французских", "булок", "да",
                 "выпей", "чаю", "Ёлка", "ЪЫЬ", "україна", "Київ", "їжак", "ґанок", "Беларусь", "ў"]
GREEK_WORDS = ["Γειά", "σου", "κόσμε", "ΑΒΓΔ", "λόγος", "φιλοσοφία", "ἀρχή", "Ὀδυσσεύς", "ς", "Σίσυφος"]
ARABIC_WORDS = ["مرحبا", "بالعالم", "اللغة", "العربية", "نموذج", "بيانات", "٠١٢٣٤٥٦٧٨٩", "كتاب"]
HEBREW_WORDS = ["שלום", "עולם", "שפה", "מודל", "ספר", "עִבְרִית"]
THAI_WORDS = ["สวัสดี", "ภาษาไทย", "โมเดล", "ข้อมูล", "การเรียนรู้"]
HINDI_WORDS = ["नमस्ते", "दुनिया", "भाषा", "मॉडल", "डेटा", "क्षत्रिय", "हिन्दी"]
JAPANESE_WORDS = ["こんにちは", "世界", "日本語", "カタカナ", "ひらがな", "東京", "機械学習", "トークナイザー", "ｶﾀｶﾅ",
                  "〜", "「引用」", "。", "、"]
EMOJI = ["😀", "😂", "🤖", "🚀", "❤️", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇨🇳", "🇰🇷", "✅", "⚡", "🔥",
         "🧑🏿‍🔬", "☕", "1️⃣", "🫠", "©", "™", "∑", "∫", "√", "≈", "≠", "∞", "←", "→", "★", "♪"]
SPACES = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", " \n", "\n ",
          "\u00a0", "\u2003", "\u3000", "\u0085", "\u200b", "\u2028", "\ufeff", "\u202f", "\u2009", " \t \n"]
ACCENTS_NFC = ["café", "naïve", "résumé", "Ångström", "São Paulo", "Zürich", "Dvořák", "Łódź", "ﬁnance", "Æsir",
               "Straße", "İstanbul", "ǅemal", "ℌilbert", "Ⅻ", "½", "²³", "①②"]


def nfd_like(word, rng):
    # Decompose a few accented letters by hand: e + combining acute etc. (what NFD text looks like).
    table = {"é": "e\u0301", "ï": "i\u0308", "ü": "u\u0308", "Å": "A\u030a", "ã": "a\u0303", "ř": "r\u030c"}
    return "".join(table.get(c, c) if rng.random() < 0.7 else c for c in word)


def synthetic_doc(rng):
    kind = rng.choice(["korean", "cyrillic", "mixed", "emoji", "spaces", "digits", "specials", "accents",
                       "scripts", "code_ws", "mixed"])
    parts = []
    n = rng.randint(3, 120)
    for _ in range(n):
        r = rng.random()
        if kind == "korean" or (kind == "mixed" and r < 0.15):
            parts.append(rng.choice(KOREAN_WORDS) + rng.choice(["", "는", "을", "이", "에서", "."]))
        elif kind == "cyrillic" or (kind == "mixed" and r < 0.3):
            parts.append(rng.choice(RUSSIAN_WORDS))
        elif kind == "emoji" or (kind == "mixed" and r < 0.4):
            parts.append("".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 4))))
        elif kind == "spaces" or (kind == "mixed" and r < 0.5):
            parts.append(rng.choice(SPACES) * rng.randint(1, 3))
        elif kind == "digits" or (kind == "mixed" and r < 0.6):
            parts.append(rng.choice([str(rng.randint(0, 10 ** rng.randint(1, 25))), f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 6)}f}",
                                     f"{rng.randint(0, 10**9):,}", "0" * rng.randint(1, 12), "٣٤٥", "１２３", "3.14159e-10",
                                     f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/20{rng.randint(10, 30)}"]))
        elif kind == "specials" or (kind == "mixed" and r < 0.7):
            parts.append(rng.choice(SPECIALS + BROKEN_SPECIALS) + rng.choice(["", " ", "\n", "x", "  "]))
        elif kind == "accents" or (kind == "mixed" and r < 0.8):
            w = rng.choice(ACCENTS_NFC)
            parts.append(nfd_like(w, rng) if rng.random() < 0.5 else w)
        elif kind == "scripts" or (kind == "mixed" and r < 0.9):
            parts.append(rng.choice(GREEK_WORDS + ARABIC_WORDS + HEBREW_WORDS + THAI_WORDS + HINDI_WORDS + JAPANESE_WORDS))
        elif kind == "code_ws":
            parts.append(rng.choice(["def f(x):", "    return x", "\tif (a &&b) {", "}", "x = [1, 2,3]",
                                     "// comment", "/* c */", "#include <vector>", "    ", "\n", "a->b", "i++",
                                     "'s", "'t", "'re", "'ve", "'LL", "don't", "I'M", "it's"]))
        else:
            parts.append(rng.choice(["the", "The", "quick", "brown", "fox", "Hello", "world", ",", ".", "!", "?",
                                     "OpenAI's", "DeepSeek-V2", "GPT-4", "e.g.", "U.S.A.", "—", "–", "…", "«»",
                                     "“quoted”", "‘single’", "（全角）", "【括号】", "中文", "混合", "English"]))
        parts.append(rng.choice(["", " ", " ", " ", "\n", "  ", "\t"]) if rng.random() < 0.8 else "")
    return "".join(parts)


def read_zip_csv(path, prefixes, header):
    out = []
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist()):
            if name.endswith(".csv") and any(name.startswith(p) for p in prefixes):
                rows = list(csv.reader(io.StringIO(z.read(name).decode("utf-8"))))
                out.extend(rows[1:] if header else rows)
    return out


def chunks(text, rng, lo, hi):
    i = 0
    while i < len(text):
        n = rng.randint(lo, hi)
        yield text[i:i + n]
        i += n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tokenizer",
                                                  "corpus.jsonl.gz"))
    args = ap.parse_args()
    rng = random.Random(20261122)
    ds = os.path.join(args.shared, "datasets")
    docs = []

    essays = sorted(os.listdir(os.path.join(ds, "niah_haystack", "paul_graham_essays")))
    text = "".join(open(os.path.join(ds, "niah_haystack", "paul_graham_essays", e), encoding="utf-8").read()
                   for e in essays[:22])
    docs += list(chunks(text, rng, 50, 6000))

    ceval = read_zip_csv(os.path.join(ds, "ceval", "ceval.zip"), ["val/", "dev/"], header=True)
    rng.shuffle(ceval)
    for row in ceval[:900]:
        docs.append("\n".join(c for c in row[1:6] if c) + ("\n答案：" + row[6] if len(row) > 6 and row[6] else ""))

    mmlu = read_zip_csv(os.path.join(ds, "mmlu", "mmlu.zip"), ["data/val/", "data/dev/"], header=False)
    rng.shuffle(mmlu)
    for row in mmlu[:450]:
        docs.append(row[0] + "\n" + "\n".join(f"{k}. {v}" for k, v in zip("ABCD", row[1:5])) + "\nAnswer:")

    gsm = [json.loads(l) for l in open(os.path.join(ds, "gsm8k", "test.jsonl"), encoding="utf-8")]
    for ex in rng.sample(gsm, 350):
        docs.append(f"Question: {ex['question']}\nAnswer: {ex['answer']}")

    with gzip.open(os.path.join(ds, "humaneval", "HumanEval.jsonl.gz"), "rt", encoding="utf-8") as f:
        for ex in map(json.loads, f):
            docs.append(ex["prompt"] + ex["canonical_solution"])
            if rng.random() < 0.3:
                docs.append(ex["test"])

    docs += [synthetic_doc(rng) for _ in range(1300)]
    # Short edge cases every tokenizer must survive.
    docs += ["", " ", "  ", "\n", "\r\n", "a", "▁", "▁▁hello", " hello", "hello ", "\u3000", "\u0085", "\ufeff",
             "<｜begin▁of▁sentence｜>", "<s>hello</s>", "x<|eot_id|>y", " <unk> ", "İ", "ǅ", "ﬁ", "Ⅻ", "\u0301",
             "e\u0301", "😀" * 50, "a" * 3000, " " * 700, "\n" * 300, "1" * 500, "ab" * 800]
    rng.shuffle(docs)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    raw = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
    with open(args.out, "wb") as f:  # fixed mtime: the same mirror gives the same bytes
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as g:
            g.write(raw)
    total = sum(len(d.encode("utf-8")) for d in docs)
    print(f"{len(docs)} documents, {total / 1e6:.2f} MB of text, {os.path.getsize(args.out) / 1e3:.0f} kB compressed")


if __name__ == "__main__":
    main()
