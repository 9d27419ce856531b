"""The overlapped exchange's buckets (Lee et al. IV-B): filled from the last layer back."""

import pytest

from lbsgd.parallel import exchange as X


@pytest.mark.parametrize("sizes, bucket_bytes, dtypes, expected", [
    # backprop order: the last variable first; consecutive variables up to the size
    ([4, 4, 4, 4], 8, None, [[2, 3], [0, 1]]),
    ([4, 4, 4, 4], 12, None, [[1, 2, 3], [0]]),
    ([4, 4, 4, 4], 1, None, [[3], [2], [1], [0]]),          # each alone (larger than a bucket)
    ([100, 4, 4], 8, None, [[1, 2], [0]]),                  # a large one alone
    ([4, 4, 100], 8, None, [[2], [0, 1]]),
    ([4, 4, 4, 4], 1 << 30, None, [[0, 1, 2, 3]]),          # one bucket: like grouped
    ([4, 4, 2, 2], 64, ["f32", "f32", "f16", "f16"], [[2, 3], [0, 1]]),   # never mixes dtypes
    ([], 8, None, []),
])
def test_buckets_value_table(sizes, bucket_bytes, dtypes, expected):
    assert X.buckets(sizes, bucket_bytes, dtypes) == expected


def test_buckets_cover_every_gradient_once():
    sizes = [9, 1, 300, 7, 7, 2, 64, 5]
    got = X.buckets(sizes, 16)
    assert sorted(i for b in got for i in b) == list(range(len(sizes)))
    assert all(sum(sizes[i] for i in b) <= 16 or len(b) == 1 for b in got)


@pytest.mark.parametrize("exchange, calls", [("grouped", 1), ("per_tensor", 7),
                                             ("reducescatter", 2), ("overlap", 3),
                                             ("overlap_reducescatter", 6)])
def test_collective_calls_per_exchange(exchange, calls):
    assert X.collective_calls(7, exchange, num_dtypes=1, num_buckets=3) == calls


def test_bad_bucket_sizes_are_refused_naming_the_argument():
    with pytest.raises(ValueError, match="bucket_bytes=0"):
        X.buckets([4], 0)
    with pytest.raises(ValueError, match=r"`bucket_mb` must be > 0. Received: bucket_mb=0"):
        X.average_gradients([None], "overlap", bucket_mb=0)
