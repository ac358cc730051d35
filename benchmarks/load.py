"""Load for the emulator's ceiling: boto3 clients, one per thread, calling ListImageVersions
back to back from an agreed instant for a fixed time (bounded in count and time, loopback
only).

``python -m benchmarks.load --endpoint-url URL --images N --threads T --start-at EPOCH
--seconds S`` prints one JSON line: {"requests": n}.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3

from .catalogue import REGION, image_name

MAX_REQUESTS_PER_THREAD = 100_000


def _client(endpoint_url: str) -> Any:
    return boto3.session.Session().client(
        "sagemaker", region_name=REGION, endpoint_url=endpoint_url
    )


def _hammer(client: Any, images: int, seed: int, start_at: float, seconds: float) -> int:
    rng = random.Random(seed)
    time.sleep(max(0.0, start_at - time.time()))
    deadline = start_at + seconds
    done = 0
    while time.time() < deadline and done < MAX_REQUESTS_PER_THREAD:
        client.list_image_versions(ImageName=image_name(rng.randrange(images)), MaxResults=100)
        done += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--start-at", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    clients = [_client(args.endpoint_url) for _ in range(args.threads)]
    with ThreadPoolExecutor(args.threads) as pool:
        counts = pool.map(
            lambda pair: _hammer(pair[1], args.images, pair[0], args.start_at, args.seconds),
            enumerate(clients),
        )
        print(json.dumps({"requests": sum(counts)}))


if __name__ == "__main__":
    main()
