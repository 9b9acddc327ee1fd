"""Cases: one session's findings under a DSL's review (new -> in review -> closed), with notes."""
