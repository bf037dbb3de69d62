"""The site's forms; Flask-WTF adds the CSRF token to each one."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Regexp
from wtforms.widgets import CheckboxInput, ListWidget

from movierec.db.schema import GENRES

MIN_PASSWORD = 8
# Long enough for any passphrase, short enough that hashing it cannot be used to burn CPU.
MAX_PASSWORD = 256
HALF_STARS = [SelectChoice(str(n / 2), f"{n / 2:g} ★") for n in range(10, 0, -1)]


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


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD)])


class RateForm(FlaskForm):
    rating = SelectField("Your rating", choices=HALF_STARS, validators=[DataRequired()])


class PreferencesForm(FlaskForm):
    genres = SelectMultipleField(
        "Genres you like",
        choices=[SelectChoice(g) for g in GENRES],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
