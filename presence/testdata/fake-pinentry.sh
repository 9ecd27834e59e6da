#!/bin/sh
# fake-pinentry.sh MODE LOG — a stand-in pinentry for presence tests. It
# speaks just enough Assuan: greets, logs each command line to LOG (after
# a first line "PID <pid>"), answers OK, and answers CONFIRM by MODE:
#   allow         OK
#   deny          ERR 83886179 Operation cancelled   (GPG_ERR_CANCELED)
#   notconfirmed  ERR 83886194 Not confirmed         (GPG_ERR_NOT_CONFIRMED)
#   broken        ERR 83918950 Inappropriate ioctl for device
#   hang          never answers (until killed or its input ends)
#   exit          exits without answering
#   noopts        like allow, but refuses OPTION commands
mode=$1
log=$2
echo "PID $$" >"$log"
echo "OK Pleased to meet you"
while IFS= read -r line; do
	printf '%s\n' "$line" >>"$log"
	case $line in
	OPTION*)
		if [ "$mode" = noopts ]; then
			echo "ERR 83886254 Unknown option <Pinentry>"
		else
			echo OK
		fi
		;;
	CONFIRM*)
		case $mode in
		allow | noopts) echo "S some status"; echo "# a comment"; echo OK ;;
		deny) echo "ERR 83886179 Operation cancelled <Pinentry>" ;;
		notconfirmed) echo "ERR 83886194 Not confirmed <Pinentry>" ;;
		broken) echo "ERR 83918950 Inappropriate ioctl for device <Pinentry>" ;;
		hang) while IFS= read -r more; do :; done; exit 0 ;;
		exit) exit 3 ;;
		esac
		;;
	BYE*) echo OK; exit 0 ;;
	*) echo OK ;;
	esac
done
