"""The pages of each role: ``dsl`` (review queue), ``teacher`` (my sessions), ``slt`` (board)."""
