from usjepa.cli import main

main()
