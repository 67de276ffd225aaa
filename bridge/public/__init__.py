"""What faces the public: the prompt rules (:mod:`.rules`, pure) and the rules in force (:mod:`.gate`).

May import only ``bridge.errors``; ``serve/`` uses it.
"""
