#!/usr/bin/python3
"""Closed-loop ScoreBatch load, as scoring_bench applies it, against any ScoreBatch server.

N client threads, each its own channel and TCP connection, send requests of B items back to
back for --seconds; items are the (prompt, chosen response) texts of items.jsonl (written by
`baseline_tool --mode=export`), taken in turn. With --group=G the load is GRPO-shaped: each run
of G items of a request holds G completions of one prompt (the prompt of one pair with the
chosen and rejected responses of that pair and the pairs after it), so a request of B items
holds B/G prompts. Prints one line
"RESULT items_per_second=... p50_ms=... p99_ms=..." (latency of whole requests).

  load.py --target 127.0.0.1:50071 --model bl --items DIR/items.jsonl --clients 8 --batch 16
  load.py --target 127.0.0.1:50071 --items DIR/items.jsonl --batch 16 --group 8   # GRPO
"""

import argparse
import json
import os
import sys
import threading
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stubs import v1  # noqa: E402


def percentile(values, p):
    values = sorted(values)
    if not values:
        return 0.0
    rank = (len(values) - 1) * p / 100.0
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def item_text(items, index, group):
    """Item `index` of the load: a pair's (prompt, chosen), or with group > 1 completion
    index % group of prompt index // group: responses taken in turn from that pair's chosen and
    rejected and those of the pairs after it."""
    if group <= 1:
        prompt, chosen, _ = items[index % len(items)]
        return prompt, chosen
    prompt_index, completion = divmod(index, group)
    prompt = items[prompt_index % len(items)][0]
    neighbour = items[(prompt_index + completion // 2) % len(items)]
    return prompt, neighbour[1 + completion % 2]


def make_request(model, items, start, batch, group=1):
    request = v1.scoring_pb2.ScoreBatchRequest(model=v1.common_pb2.ModelRef(name=model))
    for k in range(batch):
        prompt, response = item_text(items, start + k, group)
        item = request.items.add()
        item.prompt_response.prompt = prompt
        item.prompt_response.response = response
    return request


def score(target, model, items, batch, start=0, group=1):
    """The scores of one request of `batch` items starting at `start` (for agreement checks)."""
    with grpc.insecure_channel(target) as channel:
        stub = v1.scoring_pb2_grpc.ScoringServiceStub(channel)
        return list(stub.ScoreBatch(make_request(model, items, start, batch, group),
                                    timeout=120).scores)


def run_load(target, model, items, clients, batch, seconds, warmup=0.5, group=1):
    if group > 1 and batch % group != 0:
        raise ValueError(f"--batch {batch} is not a multiple of --group {group}")
    latencies, done_items, errors = [], [0], []
    lock = threading.Lock()
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds

    def client(index):
        channel = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        stub = v1.scoring_pb2_grpc.ScoringServiceStub(channel)
        cursor = index * batch
        while True:
            request = make_request(model, items, cursor, batch, group)
            cursor += batch
            began = time.perf_counter()
            if began >= stop_at:
                break
            try:
                stub.ScoreBatch(request, timeout=120)
            except grpc.RpcError as error:
                with lock:
                    errors.append(error.code())
                continue
            ended = time.perf_counter()
            if start_at <= ended <= stop_at:  # requests that end inside the window
                with lock:
                    latencies.append(ended - began)
                    done_items[0] += batch
        channel.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"items_per_second": done_items[0] / seconds,
            "p50_ms": 1000 * percentile(latencies, 50), "p99_ms": 1000 * percentile(latencies, 99),
            "requests": len(latencies), "errors": len(errors)}


def read_items(path):
    """(prompt, chosen response, rejected response) per line of items.jsonl."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(r["prompt"], r["response"], r["rejected"]) for r in rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--model", default="bl")
    parser.add_argument("--items", required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--group", type=int, default=1,
                        help="completions per prompt in a request (GRPO-shaped load); 1: "
                             "independent items")
    args = parser.parse_args()
    r = run_load(args.target, args.model, read_items(args.items), args.clients, args.batch,
                 args.seconds, group=args.group)
    print("RESULT " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in r.items()))


if __name__ == "__main__":
    main()
