"""Guard models (Llama Guard 3, ShieldGemma) as judges, each with its documented prompt format.

The registry builds them (``evaluation.guards.judge:GuardJudge``); :mod:`evaluation.guards.options`
holds their kinds and typed options, light enough for the recipe checks.
"""
