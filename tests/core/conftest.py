import pytest

from ._support import ENGINE_NAMES, get_engine


@pytest.fixture(params=ENGINE_NAMES)
def engine(request):
    """Each engine-parametrized test runs on core (under test) and on diffsync (the reference)."""
    return get_engine(request.param)
