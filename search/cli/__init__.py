"""The ``search`` command: a thin map from sub-commands to the functions of the other packages. ``_app`` holds the
application, its shared options and ``main()``; the commands of a study and of one configuration register on it
(``_study_commands``, ``_training_commands``); ``_printing`` is how their results read."""

from search.cli._app import app, json_keeps_stdout, main
from search.cli._printing import activate_hint, command_name, params_text, status_lines
from search.cli._study_commands import best, dashboard, ensemble, report, run, soup, status, worker
from search.cli._training_commands import audit, cv, explain, predict, train

# in the order `search --help` lists them: running a study, one config, looking at a study, predicting
for _command in (run, worker, train, cv, audit, status, best, report, explain, predict, ensemble, soup,
                 dashboard):
    app.command()(_command)

__all__ = ["app", "main", "command_name", "activate_hint", "params_text", "status_lines", "json_keeps_stdout"]
