"""Safety: official and manager alerts (CAP), residents' reports, SOS calls and the live feed to residents' pages."""
