"""Before and after, in full: a few held-out rows as every candidate answered them, each answer with the judge's
verdict, P(YES), the rule that refused it and the training reward's components. A mean can rise on answers nobody
would accept; these rows show what the numbers are made of. Everything comes from the results store; the rewards are
scored by :func:`~medix_lib.evaluation.training_reward.reward_scores`, the code path of ``reward_report``."""

from __future__ import annotations

from html import escape

from medix_lib.evaluation.report import item_scores
from medix_lib.evaluation.store import ResultsStore
from medix_lib.evaluation.training_reward import reward_scores

_CELL = "text-align:left; vertical-align:top; white-space:pre-wrap; max-width:28em"  # notebooks right-align cells


def gallery(store: ResultsStore, models: list[str], rows_by_task: dict[str, list[dict]], judge: str,
            prompt_hash: str, n_rows: int = 4, settings=None) -> list[dict]:
    """The first ``n_rows`` rows of each task by item id that any candidate answered, one entry each: task, item,
    question (as asked), reference, image (the row's picture; None on text rows) and ``answers``, candidate -> its
    full response, final answer, verdict, P(YES), ``refused`` (the rule that said NO) and ``rewards`` (each
    component and the composite; None without ``settings``, the reward settings notebook 03 trained with)."""
    from medix_lib.rewards import build

    funcs, weights = build(settings) if settings is not None else (None, None)
    out = []
    for task, rows in rows_by_task.items():
        answered = {m: {r["item"]: r for r in store.responses(m, task)} for m in models}
        by_id = {r["id"]: r for r in rows}
        chosen = sorted(i for i in by_id if any(i in a for a in answered.values()))[:n_rows]
        if not chosen:
            continue
        picked = [by_id[i] for i in chosen]
        verdicts = {m: item_scores(store, m, task, judge, prompt_hash) for m in models}
        rewards = {m: reward_scores(store, m, task, picked, funcs, weights) if funcs else {} for m in models}
        for item in chosen:
            stored = next(a[item] for a in answered.values() if item in a)
            answers = {m: {"response": answered[m][item]["response"], "final_answer": answered[m][item]["answer"],
                           **{k: verdicts[m][item][k] for k in ("verdict", "p_yes", "refused")},
                           "rewards": rewards[m].get(item)}
                       for m in models if item in answered[m]}
            out.append({"task": task, "item": item, "question": stored["prompt"], "reference": stored["reference"],
                        "image": by_id[item].get("image"), "answers": answers})
    return out


def _answer_cell(answer: dict | None) -> str:
    if answer is None:
        return f'<td style="{_CELL}">no response</td>'
    verdict = answer["verdict"] or "not judged"
    notes = [f"P(YES) {answer['p_yes']:.2f}" if answer["p_yes"] is not None else None,
             f"refused: {answer['refused']}" if answer["refused"] else None]
    rewards = " · ".join(f"{name} {'–' if value is None else f'{value:.2f}'}"
                         for name, value in (answer["rewards"] or {}).items())
    return (f'<td style="{_CELL}"><b>{verdict}</b> {escape(", ".join(n for n in notes if n))}'
            + (f"<br><small>reward: {escape(rewards)}</small>" if rewards else "")
            + f'<br><small>judge saw: {escape(answer["final_answer"])}</small><hr>{escape(answer["response"])}</td>')


def gallery_html(entries: list[dict]) -> str:
    """The gallery as an HTML table (show it with ``IPython.display.HTML``): a row per entry, the question and
    reference first, then each candidate's whole response, escaped and never cut, under its verdict and rewards.

    >>> entry = {"task": "t", "item": "1", "question": "Which organ?", "reference": "liver", "image": None,
    ...          "answers": {"base": {"response": "<answer>liver</answer>", "final_answer": "liver",
    ...                               "verdict": "YES", "p_yes": 0.9, "refused": None, "rewards": {"format": 1.0}}}}
    >>> html = gallery_html([entry])
    >>> "&lt;answer&gt;liver&lt;/answer&gt;" in html, "P(YES) 0.90" in html, "format 1.00" in html
    (True, True, True)
    """
    models = list(dict.fromkeys(m for e in entries for m in e["answers"]))
    head = "".join(f'<th style="{_CELL}">{escape(m)}</th>' for m in models)
    body = []
    for e in entries:
        picture = "<br><i>(picture: figure gallery_images)</i>" if e["image"] is not None else ""
        question = (f'<td style="{_CELL}"><b>{escape(e["task"])} · {escape(e["item"])}</b><br>{escape(e["question"])}'
                    f'<br><b>reference:</b> {escape(e["reference"])}{picture}</td>')
        body.append(f"<tr>{question}{''.join(_answer_cell(e['answers'].get(m)) for m in models)}</tr>")
    return f'<table><tr><th style="{_CELL}">question</th>{head}</tr>{"".join(body)}</table>'
