from fencepost.surface.cli import main

main()
