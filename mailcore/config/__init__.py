"""Configuration: main.cf, master.cf and Postfix's parameters as one immutable snapshot.

The only package that reads configuration files. ``load_config(confdir)`` returns a frozen
``Config``; reload means loading a new one and swapping it where it is held.
"""

from mailcore.config.core import Config, Origin, from_mapping, load_config

__all__ = ["Config", "Origin", "from_mapping", "load_config"]
