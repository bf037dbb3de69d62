"""The site's forms; Flask-WTF adds the CSRF token to each one (accounts: auth/forms.py)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, SelectMultipleField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, NumberRange
from wtforms.widgets import CheckboxInput, ListWidget

from movierec.db.schema import GENRES

HALF_STARS = [SelectChoice(str(n / 2), f"{n / 2:g} ★") for n in range(10, 0, -1)]


class RateForm(FlaskForm):
    rating = SelectField("Your rating", choices=HALF_STARS, validators=[DataRequired()])


class PreferencesForm(FlaskForm):
    genres = SelectMultipleField(
        "Genres you like",
        choices=[SelectChoice(g) for g in GENRES],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )


class NotInterestedForm(FlaskForm):
    """One form for the whole "for you" list: each movie's button submits its ``movie_id``
    (HTML ``form=`` attribute), so the list's cached HTML holds no CSRF token."""

    movie_id = IntegerField(validators=[DataRequired(), NumberRange(1, 2**63 - 1)])


class UndoNotInterestedForm(FlaskForm):
    """Only the CSRF token: the movie is in the URL."""
