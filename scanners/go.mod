module conveyor.dev/scanners

go 1.24
