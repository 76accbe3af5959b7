"""Write medix_lib/assets/everyday_words.txt: whole English words from SmolLM2's vocabulary (word-initial tokens of
4-9 lowercase letters) that share no stem with any word of HPO, ICD-10-CM, the drug dictionary or the judge's
vocabularies. The verifier trains on the train share of them as meaningless answers and is measured on the test
share (``verifier.phrasings``): 40 hand-picked words taught a v8 verifier the words, not the idea.

    .venv/bin/python scripts/everyday_words.py
"""

import re
from pathlib import Path

from medix_lib import models
from medix_lib.judge.terms import term_index
from medix_lib.verifier.concepts import concepts

OUT = Path(__file__).resolve().parent.parent / "medix_lib" / "assets" / "everyday_words.txt"


def main() -> None:
    vocab = models.load_tokenizer("smollm2-135m-instruct").get_vocab()
    words = sorted({t[1:] for t in vocab if t.startswith("Ġ") and re.fullmatch(r"[a-z]{4,9}", t[1:])})
    medical = {w for name in term_index() for w in name.split()}
    for c in concepts(("hpo", "icd10", "drugs", "dicom")).values():
        for text in (c.name, *c.synonyms):
            medical.update(w.lower() for w in re.findall(r"[A-Za-z]+", text))
    stems = {w[:5] for w in medical if len(w) >= 5}
    # a word sharing its first five letters with a medical word may be its fragment or inflection ("vomit",
    # "abnorm"): never a safe NO
    kept = [w for w in words if w not in medical and w[:5] not in stems]
    OUT.write_text("\n".join(kept) + "\n")
    print(f"{len(kept)} of {len(words)} vocabulary words -> {OUT}")


if __name__ == "__main__":
    main()
