"""The image safety checker that every picture passes before it leaves the engine (:mod:`.checker`)."""
