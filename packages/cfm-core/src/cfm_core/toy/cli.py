"""``cfm toy``: registered through the ``cfm.apps`` entry point of cfm-core."""

from cfm_core.cli.app import App

APP = App(name="toy", help="2-D toy distributions: fast checks of every formulation", commands=())
