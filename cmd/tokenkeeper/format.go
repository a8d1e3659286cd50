package main

// timeLayout is how tables and messages print a moment: a date, the time
// and the zone, in the local time zone.
const timeLayout = "2006-01-02 15:04:05 MST"
