import pytest
import structlog

from ._support import ENGINE_NAMES, get_engine


@pytest.fixture(params=ENGINE_NAMES)
def engine(request):
    """Each engine-parametrized test runs on core (under test) and on diffsync (the reference)."""
    return get_engine(request.param)


@pytest.fixture(autouse=True)
def _reset_structlog():
    """Leave structlog at its defaults, whatever a test configured."""
    yield
    structlog.reset_defaults()
