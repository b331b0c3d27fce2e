package main

var platformTransports = []string{"rawepoll"}
