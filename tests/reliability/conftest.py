from tests.support.fixtures import *  # noqa: F401,F403 - own PostgreSQL, Redis and embedding double per module
