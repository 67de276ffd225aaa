"""The engine's version: part of every scene identity (a new engine renders a show's scenes anew)."""

VERSION = "0.1.0"
