from orderly.cli import main

main()
