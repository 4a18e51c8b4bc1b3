from tests.evaluation.fixtures import fake_gateway, sample_index, sample_index_home  # noqa: F401
