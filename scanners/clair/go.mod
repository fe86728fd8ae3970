module conveyor.dev/scanners/clair

go 1.24
