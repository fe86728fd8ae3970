module conveyor.dev/transfer

go 1.24
