from sb3_tar.cli import main

main()
