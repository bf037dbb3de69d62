"""The login-test harness's fixtures come from tests/conftest.py (``pytest_plugins``):

browser                     session-scoped playwright Browser (headless Debian Chromium)
page                        a fresh Page per test (loopback only; screenshot on failure)
oidc_provider_factory       start(port=None, clients=[...], pkce="required") -> OIDCProvider
"""
