"""The site's forms; Flask-WTF adds the CSRF token to each one (accounts: auth/forms.py)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, SelectMultipleField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired
from wtforms.widgets import CheckboxInput, ListWidget

from movierec.db.schema import GENRES
from movierec.wire.params import MAX_ID, Problem, whole_number

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


class IdField(IntegerField):
    """An id read by the site's one rule for whole numbers (:mod:`movierec.wire.params`):
    IntegerField's ``int()`` would also take " 5" or "١" (Arabic-Indic one) for an id."""

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist:
            return
        try:
            self.data = whole_number(valuelist[0], self.name, 1, MAX_ID)
        except Problem as exc:
            self.data = None
            raise ValueError(str(exc)) from None


class NotInterestedForm(FlaskForm):
    """One form for the whole "for you" list: each movie's button submits its ``movie_id``
    (HTML ``form=`` attribute), so the list's cached HTML holds no CSRF token."""

    movie_id = IdField(validators=[DataRequired()])


class UndoNotInterestedForm(FlaskForm):
    """Only the CSRF token: the movie is in the URL."""
