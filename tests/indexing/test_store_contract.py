import pytest

from indexing.spec import StoreSpec
from indexing.store import FaissBackend
from indexing.testing import SearchBackendContract


class TestFaissFlat(SearchBackendContract):
    @pytest.fixture
    def backend(self) -> FaissBackend:
        return FaissBackend()


class TestFaissHNSW(SearchBackendContract):
    @pytest.fixture
    def backend(self) -> FaissBackend:
        return FaissBackend()

    @pytest.fixture
    def params(self) -> StoreSpec:
        return StoreSpec(dense="hnsw", hnsw_m=8)


def test_rrf_fuse_ranks_items_in_both_lists_first() -> None:
    from indexing.store import rrf_fuse

    fused = rrf_fuse([[(1, 0.9), (2, 0.8)], [(3, 5.0), (1, 4.0)]], k=3, rrf_k=60)
    assert fused[0][0] == 1
    assert {r for r, _ in fused} == {1, 2, 3}
