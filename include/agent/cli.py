"""``datamill plan | render | review | ask | op`` (shared interfaces.md §3).

- ``plan "REQUEST" [--source PATH --format F] [--from SPEC] [--feedback TEXT]
  [--name NAME] [--llm none|openai] --out SPEC [--json]``: the planner graph;
  writes SPEC only when it is valid (exit 1 and nothing written otherwise).
  ``--from`` takes a spec file or a review item's name.
- ``render SPEC``: the review item (spec, DAG file, plan.md, dry run) in the
  review folder; its path is the last line.
- ``review list | show NAME | approve NAME | reject NAME [--feedback TEXT]``.
- ``ask "QUESTION"``: answers from the project's documents, with citations.
- ``op new "DESCRIPTION"``: drafts an op into review; never imported before approval.

Exit codes: 0 success, 1 invalid input / nothing valid / refused, 2 usage.
"""
from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def _who(args) -> str:
    return args.by or os.environ.get("DATAMILL_REVIEWER") or getpass.getuser()


def _print_flags(state) -> None:
    for f in state.get("flags") or []:
        mark = " [needs confirmation at approval]" if f.get("confirm") else ""
        print(f"note: {f['kind']}: {f['message']}{mark}", file=sys.stderr)


def cmd_plan(args) -> int:
    from include.agent.graph import plan
    from include.agent.review_store import ReviewStore, atomic_write

    store = ReviewStore()
    from_spec, history = args.from_spec, []
    if from_spec and not Path(from_spec).is_file() and store.exists(from_spec):
        history = store.feedback_history(from_spec)
        from_spec = str(store.spec_path(from_spec))
    state = plan(args.request or "", source=args.source, fmt=args.format, from_spec=from_spec,
                 feedback=args.feedback, name=args.name, llm=args.llm,
                 output_table=args.output_table, feedback_history=history,
                 dry_run=not args.no_dry_run, dry_run_rows=args.dry_run_rows,
                 max_rounds=args.max_rounds, draft_ops=args.draft_ops)
    if state.get("status") != "ok":
        _print_flags(state)
        return _err(state.get("refusal") or "no valid spec")
    out = Path(args.out)
    atomic_write(out, state["rendered"]["spec_yaml"])
    store.stash_state(state)
    _print_flags(state)
    spec = state["spec"]
    dr = state.get("dry_run") or {}
    print(f"plan {spec['name']}: {len(spec['steps'])} step(s) "
          f"[{', '.join(s['op'] for s in spec['steps']) or 'ingest only'}], "
          f"repair rounds {state.get('rounds_used', 0)}, dry run {dr.get('status')}"
          + (f" ({dr.get('message')})" if dr.get("message") else ""), file=sys.stderr)
    print(f"next: datamill render {out}", file=sys.stderr)
    print(json.dumps(spec) if args.json else f"wrote {out}")
    return 0


def cmd_render(args) -> int:
    from include.agent.graph import state_from_spec
    from include.agent.review_store import ReviewError, ReviewStore

    store = ReviewStore()
    p = Path(args.spec)
    if not p.is_file():
        return _err(f"spec file {str(p)!r} not found")
    text = p.read_text(encoding="utf-8")
    state = store.stashed_state(text)
    if state is None:
        state = state_from_spec(p, dry_run=not args.no_dry_run)
        if state.get("status") != "ok":
            return _err(state.get("refusal") or "invalid spec")
    _print_flags(state)
    try:
        path = store.save_round(state)
    except ReviewError as exc:
        return _err(str(exc))
    item = store.get(state["spec"]["name"])
    print(f"review item {item['name']} (round {len(item['history'])}, {item['status']}); "
          f"approve with: datamill review approve {item['name']}", file=sys.stderr)
    print(path)
    return 0


def cmd_review(args) -> int:
    from include.agent.review_store import ReviewError, ReviewStore

    store = ReviewStore()
    try:
        if args.action == "list":
            items = store.list()
            if args.json:
                print(json.dumps(items))
            for i in items if not args.json else []:
                print(f"{i['name']:32} {i['status']:9} {i['kind']:8} rounds {i['rounds']:<3} "
                      f"{i['updated']}  {i['request'][:60]!r}")
            if not items and not args.json:
                print(f"no review items in {store.root}")
            return 0
        if not args.name:
            print("error: review show/approve/reject need NAME", file=sys.stderr)
            return 2
        if args.action == "show":
            item = store.get(args.name)
            if args.json:
                print(json.dumps(item, default=str))
                return 0
            print(f"{item['name']}: {item['status']} ({item.get('kind', 'pipeline')}), "
                  f"{len(item.get('history', []))} round(s), updated {item.get('updated')}")
            print(f"path: {item['path']}")
            for h in item.get("history", []):
                what = f"feedback {h['feedback']!r}" if h.get("feedback") else \
                    f"request {h.get('request')!r}"
                print(f"  round {h['round']} {h['ts']}: {what}")
                if h.get("diff"):
                    print("    " + h["diff"].replace("\n", "\n    ").rstrip())
            for a in item.get("approvals", []):
                print(f"  approved by {a['by']} at {a['ts']} -> {a['path']}")
            for r in item.get("rejections", []):
                print(f"  rejected by {r['by']} at {r['ts']}: {r.get('feedback')!r}")
            print()
            print(item.get("plan_md") or "")
            return 0
        if args.action == "approve":
            target = store.approve(args.name, _who(args), confirm_source=args.confirm_source,
                                   expected_round=args.round)
            print(f"approved {args.name} by {_who(args)}; live: {target}")
            return 0
        if args.action == "reject":
            store.reject(args.name, _who(args), feedback=args.feedback, expected_round=args.round)
            print(f"rejected {args.name} by {_who(args)}; revise with: datamill plan "
                  f"--from {args.name} --feedback \"...\" --out SPEC")
            return 0
    except ReviewError as exc:
        return _err(str(exc))
    return 2


def cmd_ask(args) -> int:
    from include.agent.ask import AskError, ask

    try:
        answer = ask(args.question, llm=args.llm, k=args.k)
    except AskError as exc:
        return _err(str(exc))
    if args.json:
        print(json.dumps(answer))
        return 0
    if answer.get("answer"):
        print(answer["answer"])
        print()
    for p in answer["passages"]:
        print(f"[{p['n']}] {p['source']} § {p['section']} (score {p['score']:.2f})")
        if not answer.get("answer"):
            print("    " + p["text"][:600].replace("\n", "\n    "))
    return 0


def cmd_op_new(args) -> int:
    from include.agent.opgen import OpGenError, draft_op
    from include.agent.review_store import ReviewError, ReviewStore

    try:
        draft = draft_op(args.description, llm=args.llm, name=args.name)
        path = ReviewStore().save_op(draft)
    except (OpGenError, ReviewError) as exc:
        return _err(str(exc))
    checks = draft["checks"]
    print(f"op {draft['name']} drafted ({draft['mode']}); static checks "
          f"{'passed' if checks['ok'] else 'FAILED: ' + '; '.join(checks['problems'])}; "
          "nothing is imported or run before approval", file=sys.stderr)
    print(f"approve with: datamill review approve op-{draft['name']}", file=sys.stderr)
    print(json.dumps({"name": draft["name"], "path": str(path), "checks": checks})
          if args.json else path)
    return 0 if checks["ok"] else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("plan", help="the agent: a request in plain language -> a "
                                           "validated spec")
    p.add_argument("request", nargs="?", default="", help="what to prepare, in plain words")
    p.add_argument("--source", help="file, folder or glob of the raw data (under the data roots)")
    p.add_argument("--format", help="source format (jsonl, parquet, csv, text, html, warc)")
    p.add_argument("--from", dest="from_spec", metavar="SPEC",
                   help="revise this spec (a file or a review item's name) with --feedback")
    p.add_argument("--feedback", help="what to change in the --from spec")
    p.add_argument("--name", help="pipeline name (default: derived from the request)")
    p.add_argument("--output-table", help="output Delta table (default gold/<name>)")
    p.add_argument("--llm", choices=("none", "openai"), default="none",
                   help="none: offline rules + retrieval; openai: the OpenAI-compatible "
                        "endpoint (OPENAI_BASE_URL) with structured output")
    p.add_argument("--out", required=True, help="where to write the spec")
    p.add_argument("--json", action="store_true", help="print the spec as JSON, last line")
    p.add_argument("--no-dry-run", action="store_true", help="skip the dry run on a sample")
    p.add_argument("--dry-run-rows", type=int, default=20)
    p.add_argument("--max-rounds", type=int, default=3, help="repair rounds (default 3)")
    p.add_argument("--draft-ops", action="store_true",
                   help="draft a new op into review for each part no op fits")
    p.set_defaults(func=cmd_plan)

    r = subparsers.add_parser("render", help="write the review item for a spec")
    r.add_argument("spec")
    r.add_argument("--no-dry-run", action="store_true")
    r.set_defaults(func=cmd_render)

    v = subparsers.add_parser("review", help="review agent-made pipelines and ops")
    v.add_argument("action", choices=("list", "show", "approve", "reject"))
    v.add_argument("name", nargs="?")
    v.add_argument("--feedback", help="reject: why, and what to change")
    v.add_argument("--by", help="reviewer (default: $DATAMILL_REVIEWER or the OS user)")
    v.add_argument("--confirm-source", action="store_true",
                   help="approve: confirm a flagged source path outside the data roots")
    v.add_argument("--round", type=int, metavar="N",
                   help="approve/reject only if the item is still at round N (the one you read)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_review)

    a = subparsers.add_parser("ask", help="answer from the project's documents, with citations")
    a.add_argument("question")
    a.add_argument("--llm", choices=("none", "openai"), default="none")
    a.add_argument("--k", type=int, default=4, help="passages to cite")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_ask)

    o = subparsers.add_parser("op", help="generated ops")
    osub = o.add_subparsers(dest="op_cmd", required=True)
    n = osub.add_parser("new", help="draft a new op into review (never imported before approval)")
    n.add_argument("description")
    n.add_argument("--llm", choices=("none", "openai"), default="none")
    n.add_argument("--name", help="op name (default: derived from the description)")
    n.add_argument("--json", action="store_true")
    n.set_defaults(func=cmd_op_new)
