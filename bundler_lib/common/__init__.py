"""What several stages share as data or helpers; no stage module is imported from here."""
