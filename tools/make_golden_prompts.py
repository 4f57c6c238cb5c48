#!/usr/bin/env python3
"""Writes tests/data/tasks/golden_prompts.json: a few prompts per task rendered the way lm-evaluation-harness and
the official C-Eval code build them, written here independently of the C++ task code (tasks/), which
tests/tasks/test_tasks.cpp compares against byte for byte.

Usage: tools/make_golden_prompts.py [--datasets DIR] [--out FILE]
DIR holds mmlu/, ceval/ and gsm8k/, either as the data mirror keeps them (mmlu/mmlu.zip, ceval/ceval.zip,
gsm8k/*.jsonl; default ../shared/datasets) or extracted (mmlu/data/..., ceval/val/...). Python 3 stdlib only.

The logic mirrors lm-eval's Task.fewshot_context (lm_eval/api/task.py): description, then for each shot
doc_to_text + target_delimiter + target + fewshot_delimiter, then doc_to_text of the document. Shots: first_n
(the split's first rows) or lm-eval's default sampler, random.Random(1234).sample(fewshot_docs, k) drawn once per
document in document order from one generator.
"""
import argparse
import csv
import io
import json
import os
import random
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The 8 chain-of-thought exemplars of Wei et al. (2022) as lm-eval's gsm8k-cot.yaml fewshot_config.samples writes
# them (EleutherAI/lm-evaluation-harness lm_eval/tasks/gsm8k/gsm8k-cot.yaml).
GSM8K_COT_EXEMPLARS = [
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
     "there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have "
     "been 21 - 15 = 6. The answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, "
     "they had 74 - 35 = 39. The answer is 39."),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
     "Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. "
     "The answer is 8."),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have "
     "now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. "
     "The answer is 9."),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
     "computers were added. 9 + 20 is 29. The answer is 29."),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
     "balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, "
     "he had 35 - 2 = 33 golf balls. The answer is 33."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars "
     "left. 23 - 15 is 8. The answer is 8."),
]

MMLU_SUBJECTS = ["college_mathematics", "virology"]  # a quoted CRLF inside a dev question; a CRLF file
CEVAL_SUBJECTS = ["middle_school_politics", "accountant"]  # CRLF inside val questions; long questions
GSM8K_DOCS = [0, 1, 2, 1318]


class Dataset:
    """Reads a dataset's files from its folder or, in the mirror's layout, from its zip."""

    def __init__(self, folder, zip_name, zip_prefix):
        self.folder = folder
        self.zip = None
        self.zip_prefix = zip_prefix
        if zip_name and os.path.exists(os.path.join(folder, zip_name)):
            self.zip = zipfile.ZipFile(os.path.join(folder, zip_name))

    def text(self, relative):
        if self.zip is not None and not relative.endswith("subject_mapping.json"):
            return self.zip.read(self.zip_prefix + relative).decode("utf-8")
        with open(os.path.join(self.folder, relative), encoding="utf-8", newline="") as f:
            return f.read()

    def csv_rows(self, relative, header):
        rows = [r for r in csv.reader(io.StringIO(self.text(relative), newline="")) if r]
        if header:
            names = rows[0]
            return [dict(zip(names, r)) for r in rows[1:]]
        return [dict(zip(["question", "A", "B", "C", "D", "answer"], r)) for r in rows]


def zip_prefix(folder, zip_name):
    """The zip's folder prefix for the layout (mmlu.zip holds mmlu/data/..., ceval.zip ceval/...)."""
    path = os.path.join(folder, zip_name)
    if not os.path.exists(path):
        return ""
    names = zipfile.ZipFile(path).namelist()
    probe = "data/test/anatomy_test.csv" if zip_name == "mmlu.zip" else "val/accountant_val.csv"
    for name in names:
        if name.endswith(probe):
            return name[: -len(probe)]
    raise SystemExit(f"{path}: no member ending in {probe}")


def context(description, shots, query, target_delimiter, fewshot_delimiter):
    """lm-eval's fewshot_context: description + (q + target_delimiter + a + fewshot_delimiter)* + query."""
    return description + "".join(q + target_delimiter + a + fewshot_delimiter for q, a in shots) + query


def mmlu_prompts(data):
    mapping = json.loads(data.text("subject_mapping.json"))
    out = []
    for subject in MMLU_SUBJECTS:
        assert subject in mapping
        description = f"The following are multiple choice questions (with answers) about {' '.join(subject.split('_'))}.\n\n"

        def text(d):
            return f"{d['question'].strip()}\nA. {d['A']}\nB. {d['B']}\nC. {d['C']}\nD. {d['D']}\nAnswer:"

        dev = data.csv_rows(f"data/dev/{subject}_dev.csv", header=False)
        test = data.csv_rows(f"data/test/{subject}_test.csv", header=False)
        shots = [(text(d), d["answer"]) for d in dev[:5]]
        for doc_id in (0, len(test) - 1):
            d = test[doc_id]
            out.append({"task": "mmlu", "subtask": f"mmlu_{subject}", "doc_id": doc_id,
                        "context": context(description, shots, text(d), " ", "\n\n"),
                        "choices": [" A", " B", " C", " D"], "gold": "ABCD".index(d["answer"])})
    return out


def ceval_prompts(data, official):
    mapping = json.loads(data.text("subject_mapping.json"))
    out = []
    for subject in CEVAL_SUBJECTS:
        name = mapping[subject]["name"]
        dev = data.csv_rows(f"dev/{subject}_dev.csv", header=True)
        val = data.csv_rows(f"val/{subject}_val.csv", header=True)
        if official:
            # hkust-nlp/ceval code/evaluator_series/evaluators/llama.py: generate_few_shot_prompt + format_example
            description = f"以下是中国关于{name}考试的单项选择题，请选出其中的正确答案。\n\n"
            question = lambda d: d["question"]  # noqa: E731
            delimiter, task, prefix = "", "ceval", "ceval_"
        else:
            # lm-eval tasks/ceval/_default_ceval_yaml and ceval-valid_<subject>.yaml
            description = f"以下是中国关于{name}的单项选择题，请选出其中的正确答案。\n\n"
            question = lambda d: d["question"].strip()  # noqa: E731
            delimiter, task, prefix = " ", "ceval_lmeval", "ceval_lmeval_"

        def text(d):
            return f"{question(d)}\nA. {d['A']}\nB. {d['B']}\nC. {d['C']}\nD. {d['D']}\n答案："

        shots = [(text(d), d["answer"]) for d in dev[:5]]
        for doc_id in (0, len(val) - 1):
            d = val[doc_id]
            out.append({"task": task, "subtask": prefix + subject, "doc_id": doc_id,
                        "context": context(description, shots, text(d), delimiter, "\n\n"),
                        "choices": [delimiter + c for c in "ABCD"], "gold": "ABCD".index(d["answer"])})
    return out


def gsm8k_prompts(data):
    def jsonl(name):
        return [json.loads(line) for line in data.text(name).split("\n") if line.strip()]

    test, train = jsonl("test.jsonl"), jsonl("train.jsonl")

    def gold(d):
        return d["answer"].split("####")[-1].strip()

    out = []
    # gsm8k: lm-eval's default sampler, one random.Random(1234) for the task, sample(train, 5) per document.
    rnd = random.Random(1234)
    for doc_id, d in enumerate(test[: max(GSM8K_DOCS) + 1]):
        shots = [(f"Question: {s['question']}\nAnswer:", s["answer"]) for s in rnd.sample(train, 5)]
        if doc_id in GSM8K_DOCS:
            out.append({"task": "gsm8k", "subtask": "gsm8k", "doc_id": doc_id,
                        "context": context("", shots, f"Question: {d['question']}\nAnswer:", " ", "\n\n"),
                        "target": gold(d)})
    # gsm8k_cot: the paper's "Q: ...\nA: Let's think step by step. ..." with the 8 fixed exemplars.
    shots = [(f"Q: {q}\nA: Let's think step by step.", a) for q, a in GSM8K_COT_EXEMPLARS]
    for doc_id in GSM8K_DOCS:
        d = test[doc_id]
        out.append({"task": "gsm8k_cot", "subtask": "gsm8k_cot", "doc_id": doc_id,
                    "context": context("", shots, f"Q: {d['question']}\nA: Let's think step by step.", " ", "\n\n"),
                    "target": gold(d)})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=os.path.join(REPO, "..", "shared", "datasets"))
    parser.add_argument("--out", default=os.path.join(REPO, "tests", "data", "tasks", "golden_prompts.json"))
    args = parser.parse_args()

    mmlu_dir = os.path.join(args.datasets, "mmlu")
    ceval_dir = os.path.join(args.datasets, "ceval")
    mmlu = Dataset(mmlu_dir, "mmlu.zip", zip_prefix(mmlu_dir, "mmlu.zip"))
    ceval = Dataset(ceval_dir, "ceval.zip", zip_prefix(ceval_dir, "ceval.zip"))
    gsm8k = Dataset(os.path.join(args.datasets, "gsm8k"), None, "")

    prompts = mmlu_prompts(mmlu) + ceval_prompts(ceval, official=True) + ceval_prompts(ceval, official=False)
    prompts += gsm8k_prompts(gsm8k)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/make_golden_prompts.py", "prompts": prompts}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(prompts)} prompts to {args.out}")


if __name__ == "__main__":
    main()
