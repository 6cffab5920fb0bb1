from tests.projections.fixtures import broker, redis_server

__all__ = ["broker", "redis_server"]
