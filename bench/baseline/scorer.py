#!/usr/bin/python3
"""A per-request Python reward scorer serving verdict's ScoreBatch: the baseline scoring arm.

OpenRLHF-style (its remote reward-model server): each request is tokenized and scored on its
own, its items right-padded into one batch and run in one forward; nothing is batched across
requests. The forward runs under a lock (--concurrency 1, the default), as a single-process
Python server with a synchronous model call runs one request at a time; --concurrency N lets N
requests' forwards overlap (PyTorch releases the GIL inside its kernels).

Serves PromptResponse and text items with the model directory's "concat" input rule
(model.ConcatEncoder); any model name is accepted, as there is one model.

  scorer.py --model_dir DIR/trained --port 50071
"""

import argparse
import os
import sys
import threading
import time
from concurrent import futures

import grpc
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import ConcatEncoder, load_model, pad_batch  # noqa: E402
from stubs import v1  # noqa: E402


class Scorer(v1.scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, model_dir, concurrency):
        self.model = load_model(model_dir).eval()
        self.encoder = ConcatEncoder(model_dir)
        self.pad_id = int(self.model.config.get("pad_token_id", 0) or 0)
        self.slots = threading.Semaphore(concurrency)

    def ScoreBatch(self, request, context):
        if not request.items:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no items")
        rows = []
        for item in request.items:
            kind = item.WhichOneof("kind")
            if kind == "prompt_response":
                rows.append(self.encoder.encode(item.prompt_response.prompt,
                                                item.prompt_response.response))
            elif kind == "text":
                rows.append(self.encoder.encode("", item.text))
            else:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported item kind {kind}")
        ids, mask = pad_batch(rows, self.pad_id)
        with self.slots, torch.inference_mode():
            scores = self.model(ids, mask).tolist()
        return v1.scoring_pb2.ScoreBatchResponse(
            scores=scores, model=request.model, token_counts=[len(r) for r in rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--port", type=int, default=50071)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--workers", type=int, default=16, help="gRPC handler threads")
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers),
                         options=[("grpc.max_receive_message_length", 64 << 20)])
    v1.scoring_pb2_grpc.add_ScoringServiceServicer_to_server(
        Scorer(args.model_dir, args.concurrency), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"scorer.py: serving {args.model_dir} on 127.0.0.1:{args.port} "
          f"(torch threads {torch.get_num_threads()})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop(1)


if __name__ == "__main__":
    main()
