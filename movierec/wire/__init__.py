"""The wire: request parameters and the HTTP contracts of the site's JSON API and of the
recommender server, each defined once and read by both ends (see :mod:`movierec.wire.params`)."""
