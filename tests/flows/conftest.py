from tests.evaluation.fixtures import fake_gateway, sample_index, sample_index_home  # noqa: F401
from tests.gateway.telemetry import spans  # noqa: F401
