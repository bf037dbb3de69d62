"""The forms of logging in and of the account's security; Flask-WTF adds the CSRF token."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import IntegerField, PasswordField, StringField
from wtforms.validators import (
    DataRequired,
    EqualTo,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)

from movierec.web.auth.policy import MAX_LENGTH as MAX_PASSWORD
from movierec.web.auth.policy import MIN_LENGTH as MIN_PASSWORD
from movierec.web.auth.policy import password_problems


class SignupForm(FlaskForm):
    username = StringField(
        "Username",
        validators=[
            DataRequired(),
            Length(3, 64),
            Regexp(r"^[A-Za-z0-9_.-]+$", message="Use letters, digits, '.', '_' or '-'."),
        ],
    )
    password = PasswordField(
        "Password",
        validators=[
            DataRequired(),
            Length(
                MIN_PASSWORD,
                MAX_PASSWORD,
                message=f"Use at least {MIN_PASSWORD} characters (at most {MAX_PASSWORD}).",
            ),
        ],
    )
    confirm = PasswordField(
        "Repeat password", validators=[EqualTo("password", message="Passwords differ.")]
    )

    def validate_password(self, field: PasswordField) -> None:
        if field.errors:  # too short or too long: said already
            return
        problems = password_problems(field.data or "", self.username.data)
        if problems:
            raise ValidationError(" ".join(problems))


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])


class PasswordForm(FlaskForm):
    """Set a password, or change it (then the current one is asked for)."""

    current = PasswordField("Current password", validators=[Length(max=MAX_PASSWORD)])
    password = PasswordField(
        "New password",
        validators=[
            DataRequired(),
            Length(
                MIN_PASSWORD,
                MAX_PASSWORD,
                message=f"Use at least {MIN_PASSWORD} characters (at most {MAX_PASSWORD}).",
            ),
        ],
    )
    confirm = PasswordField(
        "Repeat new password", validators=[EqualTo("password", message="Passwords differ.")]
    )


class TokenForm(FlaskForm):
    """A new API token: its name, how many days it lasts (the site's default when empty),
    and the password (minting a token from a stolen session must take more than the
    session)."""

    name = StringField("Token name", validators=[DataRequired(), Length(max=64)])
    days = IntegerField("Days until it expires", validators=[Optional(), NumberRange(min=1)])
    password = PasswordField("Your password", validators=[Length(max=MAX_PASSWORD)])


class DeleteAccountForm(FlaskForm):
    confirm = StringField("Type your username to confirm", validators=[DataRequired()])
