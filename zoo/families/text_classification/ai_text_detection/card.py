"""What a detector's card must say beyond its metrics: accuracy per generator, and its limitations."""

from __future__ import annotations

from typing import Any

LIMITATIONS = """\
### Limitations of a detector

- **False positives on human text.** The accuracy on human rows above is the share of human texts called human;
  the rest would be wrongly flagged as machine-written. Never use a detector's verdict alone to accuse a person
  (students, non-native writers and formulaic genres are flagged more often).
- **Domain shift.** Trained on {domains}; other genres, lengths, languages or edited/paraphrased text shift its
  scores, and its threshold was not calibrated for them.
- **Generators not seen.** {holdout}Newer or larger generators, other decoding settings and human-edited machine
  text are out of distribution; expect lower accuracy than on the generators it was trained on.
- **Short texts.** Inputs are cut to {max_words} words after the shared opening; very short texts carry little signal.
"""


def notes(model: Any, results: dict[str, Any] | None) -> str:
    opts = dict(model.dataset.builder.options) if model.dataset.builder else {}
    holdout = opts.get("holdout") or []
    held = (f"{', '.join(holdout)} {'was' if len(holdout) == 1 else 'were'} held out of training: its row below "
            "shows how the detector generalises to a generator it never saw. ") if holdout else ""
    lines = []
    per = ((results or {}).get("details") or {}).get("per_generator") or {}
    if per:
        lines += ["### Accuracy per generator", "",
                  "Test rows by the generator that wrote them (`human`: human-written); held-out generators are "
                  "marked.", "", "| generator | rows | accuracy |", "| --- | --- | --- |"]
        lines += [f"| {g}{' (held out)' if g in holdout else ''} | {v['rows']} | {v['accuracy']:.4f} |"
                  for g, v in per.items()]
        lines.append("")
    kfold = (results or {}).get("kfold") or {}
    if kfold:
        k = next(iter(kfold.values()))["k"]
        lines += [f"Spread over {k} folds of the test rows (mean ± std): "
                  + "; ".join(f"{m} {v['mean']:.4f} ± {v['std']:.4f}" for m, v in kfold.items()), ""]
    domains = ", ".join(opts.get("domains") or ["the source's domains"])
    lines.append(LIMITATIONS.format(domains=domains, holdout=held, max_words=opts.get("max_words", 200)))
    return "\n".join(lines) + "\n"
