"""The AI-generated-text detector's data builder (``fast-detect-gpt``) and card notes, for text classification."""
