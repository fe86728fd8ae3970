module go-app

go 1.23
