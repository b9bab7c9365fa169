"""Benchmark: evaluation throughput, resume cost and scoring speed, measured in one run.

1. Throughput against a loopback OpenAI-compatible server with a fixed latency, as a ratio to
   the ideal items x latency / concurrency (target >= 90%).
2. Resuming a finished run (every item already answered): wall time (target < 1 s for 10k).
3. Scoring 100k items with boxes (score_item + aggregate with bootstrap CIs): wall time
   (target < 5 s).

    python benchmarks/eval_harness.py [--volumes 400] [--latency 0.05] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from openai_stub import StubServer  # noqa: E402 - the test suite's loopback server

from voxqa.build import build_fastmri_plus  # noqa: E402
from voxqa.eval.metrics.aggregate import aggregate  # noqa: E402
from voxqa.eval.metrics.items import score_item  # noqa: E402
from voxqa.eval.models import make_model  # noqa: E402
from voxqa.eval.run import RunConfig, run_eval  # noqa: E402
from voxqa.phantom import write_phantom  # noqa: E402
from voxqa.render import RenderSettings, render_dataset  # noqa: E402


def _always_yes(content: list) -> str:
    return "yes"


def _serve(latency: float, urls: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    """The stub server in its own process, so it does not share the client's GIL."""
    with StubServer(_always_yes, delay=latency) as srv:
        urls.put(srv.url)
        stop.wait()


def scoring(n: int = 100_000) -> float:
    r = random.Random(0)
    records = []
    t0 = time.perf_counter()
    for i in range(n):
        kind = ("yes_no", "boxes", "choice")[i % 3]
        if kind == "boxes":
            gold = [{"frame": 3, "box": [10, 10, 40, 40]}, {"frame": 4, "box": [12, 12, 44, 44]}]
            pred = [{"frame": 3, "box": [r.randrange(20), r.randrange(20), 45, 45]}]
        elif kind == "yes_no":
            gold, pred = "yes", r.choice(["yes", "no"])
        else:
            gold, pred = 1, r.randrange(4)
        records.append({"task": "t", "subtask": kind, "level": "frame", "label": f"l{i % 20}",
                        "category": None, "template": kind, "answer_type": kind,
                        "chance": None if kind == "boxes" else 0.5, "parse_ok": True,
                        "scores": score_item(kind, gold, pred)})
    aggregate(records)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=400)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--throughput-items", type=int, default=400)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        p = write_phantom(root / "src", n=args.volumes, seed=0)
        ds = root / "ds"
        build_fastmri_plus([(p["annotations"], p["file_list"])], ds, volumes=p["volumes"])
        render_dataset(ds, RenderSettings(context=4), workers=2)

        urls: multiprocessing.Queue = multiprocessing.Queue()
        stop = multiprocessing.Event()
        server = multiprocessing.Process(target=_serve, args=(args.latency, urls, stop))
        server.start()
        try:
            model = make_model("openai:stub", ds, base_url=urls.get(timeout=30))
            cfg = RunConfig(dataset=ds, out=root / "tp", split=None, limit=args.throughput_items,
                            concurrency=args.concurrency)
            t0 = time.perf_counter()
            asyncio.run(run_eval(cfg, model))
            t = time.perf_counter() - t0
        finally:
            stop.set()
            server.join()
        ideal = args.throughput_items * args.latency / args.concurrency
        print(f"throughput: {args.throughput_items} items at {args.latency * 1000:.0f} ms latency, "
              f"concurrency {args.concurrency}: {t:.2f} s vs ideal {ideal:.2f} s = {ideal / t:.0%} "
              "(target >= 90%)")

        oracle = make_model("oracle", ds)
        cfg = RunConfig(dataset=ds, out=root / "full", split=None, concurrency=64)
        counts = asyncio.run(run_eval(cfg, oracle))
        t0 = time.perf_counter()
        again = asyncio.run(run_eval(cfg, oracle))
        t = time.perf_counter() - t0
        assert again["already_done"] == counts["items"]
        print(f"resume of a finished {counts['items']}-item run: {t:.2f} s (target < 1 s for 10k)")
    print(f"scoring 100k items (a third with boxes), with bootstrap CIs: {scoring():.2f} s "
          "(target < 5 s)")


if __name__ == "__main__":
    main()
