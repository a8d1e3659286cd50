package main

// timeLayout is how tables and messages print a moment: a date, the time
// and the zone, in the local time zone.
const timeLayout = "2006-01-02 15:04:05 MST"

// timeLayoutMilli is timeLayout with milliseconds, for events.
const timeLayoutMilli = "2006-01-02 15:04:05.000 MST"

// plural returns one for n == 1, many otherwise: "1 secret", "2 secrets".
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
