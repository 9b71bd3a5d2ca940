"""Listings come back in S3 key order from the real store, which itself lists folder by folder.

SeaweedFS lists a folder's entries in name order with a subfolder named without its '/', so
the folder `a` and everything in it comes before `a-b.jpg` and `a.jpg`; S3 (and every ledger,
manifest and resume check here) orders keys byte by byte, `a-b.jpg` < `a.jpg` < `a/x.jpg`.
The randomized bad-media corpus met this as "the input listing is not in key order".
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.integration
BUCKET = "it-listing-order"
# Names that extend a folder's name with a character below '/' (space ! + - .), and non-ASCII.
ALPHABET = "a-.!0+ ü"


@pytest.fixture(scope="module")
def bucket(local_stack) -> str:
    from jobs.storage.objects import s3_client

    s3_client().create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture(scope="module")
def stored_keys(bucket) -> list[str]:
    from jobs.storage.objects import s3_client

    client = s3_client()
    rng, keys = random.Random(20261207), set()
    while len(keys) < 60:
        segments = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 4))]
        if not {".", ".."} & set(segments):  # SeaweedFS refuses dot segments
            keys.add("in/" + "/".join(segments) + ".jpg")
    for key in [*keys, "in/a/x.jpg", "in/a-b.jpg", "in/a.jpg", "in/a0.jpg", "in-sibling.jpg"]:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    return sorted({*keys, "in/a/x.jpg", "in/a-b.jpg", "in/a.jpg", "in/a0.jpg"}, key=lambda k: k.encode("utf-8"))


def test_the_store_itself_lists_out_of_key_order(stored_keys):
    """The premise: without the walk, a flat listing from this store is not in key order."""
    from jobs.storage.objects import s3_client

    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="in/")
    flat = [item["Key"] for page in pages for item in page.get("Contents", [])]
    assert sorted(flat) == sorted(stored_keys) and flat != stored_keys


def test_list_objects_yields_every_key_once_in_byte_order(stored_keys):
    from jobs.storage.objects import list_objects

    listed = [obj.uri.removeprefix(f"s3://{BUCKET}/") for obj in list_objects(f"s3://{BUCKET}/in/")]
    assert listed == [key for key in stored_keys if not key.rsplit("/", 1)[-1].startswith(".")]  # hidden: skipped
    position = listed.index
    assert position("in/a-b.jpg") < position("in/a.jpg") < position("in/a/x.jpg") < position("in/a0.jpg")


@pytest.mark.parametrize("page_size", [1, 2, 7])
def test_the_folder_walk_keeps_key_order_across_page_boundaries(stored_keys, page_size):
    from jobs.storage.key_order import walk_s3_folders
    from jobs.storage.objects import s3_client

    walked = [item["Key"] for item in walk_s3_folders(s3_client(), BUCKET, "in/", page_size=page_size)]
    assert walked == stored_keys


def test_a_listing_longer_than_a_page_is_walked_in_key_order(bucket):
    """Over 1,000 keys: the first flat page is not the whole listing, so it is walked."""
    from jobs.storage.objects import list_objects, s3_client

    client = s3_client()
    keys = [f"long/{folder}/{i:03d}.jpg" for folder in ("a", "a-b", "a.b", "a0") for i in range(260)]
    keys += ["long/a.jpg", "long/a-.jpg", "long/a!.jpg"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=BUCKET, Key=key, Body=b"x"), keys))
    assert client.list_objects_v2(Bucket=BUCKET, Prefix="long/")["IsTruncated"]

    listed = [obj.uri.removeprefix(f"s3://{BUCKET}/") for obj in list_objects(f"s3://{BUCKET}/long/")]
    assert listed == sorted(keys, key=lambda k: k.encode("utf-8"))
