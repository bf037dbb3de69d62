"""The recommender key the tests' settings carry (tests/conftest.py's ``settings``), and the
header a caller sends with it."""

AI_KEY = "test-ai-key"
KEYED = {"Authorization": f"Bearer {AI_KEY}"}
