"""``cfm image``: the commands of this app, registered through the ``cfm.apps`` entry point."""

from cfm_core.cli import App

APP = App(name="image", help="(in progress) see the issue tracker", commands=())
