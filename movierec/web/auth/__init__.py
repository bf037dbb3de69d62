"""Who may do what: password and OAuth logins, linked accounts, API tokens, rate limits.

password.py   sign up, log in, log out with a password (argon2id)
oauth.py      flask-dance blueprints for GitHub, Google and an OpenID Connect provider
providers.py  which providers are configured, discovery, who signed in there
linking.py    accounts and the identities linked to them
sessions.py   the login session (generation), Bearer tokens, the CSRF check
tokens.py     personal API tokens
security.py   what the account page shows of the ways in and tokens; fresh re-authentication
limits.py     rate limits on login and sign-up
policy.py     which passwords are accepted
"""

from movierec.web.auth.extension import init_app
from movierec.web.auth.oauth import form_action_sources
from movierec.web.auth.password import BAD_LOGIN, HASHER, Passwords, passwords
from movierec.web.auth.sessions import CurrentUser, login_manager, safe_next

__all__ = [
    "BAD_LOGIN",
    "HASHER",
    "CurrentUser",
    "Passwords",
    "form_action_sources",
    "init_app",
    "login_manager",
    "passwords",
    "safe_next",
]
