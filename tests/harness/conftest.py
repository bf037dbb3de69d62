"""The login-test harness's fixtures: import these names into any conftest.py that needs them.

browser                     session-scoped playwright Browser (headless Debian Chromium)
page                        a fresh Page per test (loopback only; screenshot on failure)
oidc_provider_factory       start(port=None, clients=[...], pkce="required") -> OIDCProvider
pytest_runtest_makereport   the hook the `page` fixture needs to see a failure
"""

from support.browser import browser, page, pytest_runtest_makereport
from support.oidc import oidc_provider_factory

__all__ = ["browser", "oidc_provider_factory", "page", "pytest_runtest_makereport"]
