"""The site's forms; Flask-WTF adds the CSRF token to each one (accounts: auth/forms.py)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, SelectMultipleField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired
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
