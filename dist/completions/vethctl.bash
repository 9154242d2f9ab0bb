# bash completion for vethctl(1)                          -*- shell-script -*-
#
# Installed as /usr/share/bash-completion/completions/vethctl. Works with or
# without the bash-completion package: it uses only COMP_WORDS, COMP_CWORD
# and compgen.

# _vethctl_prev: the word before the cursor; for "--opt=" (which
# COMP_WORDBREAKS splits at '='), the option.
_vethctl_prev() {
    local prev=${COMP_WORDS[COMP_CWORD-1]}
    if [[ $prev == "=" && $COMP_CWORD -ge 2 ]]; then
        prev=${COMP_WORDS[COMP_CWORD-2]}
    fi
    printf '%s' "$prev"
}

# _vethctl_config_dir: the --config-dir given on the line, or /etc/vethd.
_vethctl_config_dir() {
    local i dir=/etc/vethd
    for (( i = 1; i < COMP_CWORD; i++ )); do
        case ${COMP_WORDS[i]} in
            --config-dir)
                if [[ ${COMP_WORDS[i+1]} == "=" ]]; then
                    dir=${COMP_WORDS[i+2]}
                else
                    dir=${COMP_WORDS[i+1]}
                fi
                ;;
            --config-dir=*)
                dir=${COMP_WORDS[i]#--config-dir=}
                ;;
        esac
    done
    printf '%s' "$dir"
}

# _vethctl_names: bridge names, from "vethctl list --no-legend" (units,
# bus, files) and from the configuration files themselves.
_vethctl_names() {
    local dir f
    dir=$(_vethctl_config_dir)
    {
        "${COMP_WORDS[0]}" --config-dir "$dir" list --no-legend 2>/dev/null |
            while read -r f _; do printf '%s\n' "$f"; done
        for f in "$dir"/*.conf; do
            [[ -f $f ]] || continue
            f=${f##*/}
            printf '%s\n' "${f%.conf}"
        done
    } | sort -u
}

# _vethctl_parents: the links --parent can name, from "vethctl __complete
# parents": Ethernet links (type 1: not lo, tun or WireGuard) that are not
# vethd's own (a bridge's virtual interface or its vd-* peer). If that
# vethctl cannot say (an older one), the same from /sys and the config
# files, without the bridges that are only on the bus.
_vethctl_parents() {
    local dir f n type
    dir=$(_vethctl_config_dir)
    if "${COMP_WORDS[0]}" --config-dir "$dir" __complete parents 2>/dev/null; then
        return 0
    fi
    for f in /sys/class/net/*; do
        n=${f##*/}
        [[ -r $f/type ]] || continue
        read -r type <"$f/type"
        [[ $type == 1 && $n != vd-* && ! -e $dir/$n.conf ]] && printf '%s\n' "$n"
    done
}

_vethctl() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local commands="list status show stats watch metrics add remove reload reset mac help"
    local global="--json -j --no-legend --no-pager --config-dir --machine-id-file --version --help"
    local with_arg="--config-dir|--machine-id-file|--parent|--mac|--mtu|--carrier|--kind|--data-path|--netns|--interval|--format|--output|--timeout"
    [[ $cur == "=" ]] && cur=""

    COMPREPLY=()
    case $(_vethctl_prev) in
        --config-dir)
            COMPREPLY=( $(compgen -d -- "$cur") ); return 0 ;;
        --machine-id-file)
            COMPREPLY=( $(compgen -f -- "$cur") ); return 0 ;;
        --parent)
            COMPREPLY=( $(compgen -W "$(_vethctl_parents)" -- "$cur") ); return 0 ;;
        --mac)
            COMPREPLY=( $(compgen -W "persistent random" -- "$cur") ); return 0 ;;
        --mtu)
            COMPREPLY=( $(compgen -W "inherit 1500 9000" -- "$cur") ); return 0 ;;
        --carrier)
            COMPREPLY=( $(compgen -W "follow on" -- "$cur") ); return 0 ;;
        --kind)
            COMPREPLY=( $(compgen -W "tap veth" -- "$cur") ); return 0 ;;
        --data-path)
            COMPREPLY=( $(compgen -W "relay kernel" -- "$cur") ); return 0 ;;
        --netns)
            COMPREPLY=( $(compgen -W "$(ls /run/netns 2>/dev/null)" -- "$cur") ); return 0 ;;
        --interval)
            COMPREPLY=( $(compgen -W "1s 500ms 2s 5s" -- "$cur") ); return 0 ;;
        --format)
            COMPREPLY=( $(compgen -W "prometheus openmetrics" -- "$cur") ); return 0 ;;
        --output)
            COMPREPLY=( $(compgen -f -- "$cur") ); return 0 ;;
        --timeout)
            COMPREPLY=( $(compgen -W "10s 90s 0" -- "$cur") ); return 0 ;;
    esac

    # The command is the first word that is neither an option nor an
    # option's argument; count the arguments after it.
    local i word cmd="" nargs=0
    for (( i = 1; i < COMP_CWORD; i++ )); do
        word=${COMP_WORDS[i]}
        if [[ $word == "=" ]]; then
            (( i++ ))
            continue
        fi
        if [[ $word == -* ]]; then
            # An option with its argument in the next word.
            if [[ $word =~ ^($with_arg)$ && ${COMP_WORDS[i+1]} != "=" ]]; then
                (( i++ ))
            fi
            continue
        fi
        if [[ -z $cmd ]]; then
            cmd=$word
        else
            (( nargs++ ))
        fi
    done

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=( $(compgen -W "$global" -- "$cur") )
        else
            COMPREPLY=( $(compgen -W "$commands" -- "$cur") )
        fi
        return 0
    fi

    local opts="" names=""
    case $cmd in
        help) ;;
        list|status|show)
            names=1 ;;
        reload)
            opts="--timeout"
            [[ $nargs -eq 0 ]] && names=1 ;;
        reset|mac)
            [[ $nargs -eq 0 ]] && names=1 ;;
        stats|watch)
            opts="--interval"; names=1 ;;
        metrics)
            opts="--format --output"; names=1 ;;
        add)
            opts="--parent --mac --mtu --carrier --kind --data-path --netns --now --force --timeout --no-block" ;;
        remove)
            opts="--keep-config --timeout --no-block"
            [[ $nargs -eq 0 ]] && names=1 ;;
        *)
            return 0 ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=( $(compgen -W "$opts $global" -- "$cur") )
    elif [[ -n $names ]]; then
        COMPREPLY=( $(compgen -W "$(_vethctl_names)" -- "$cur") )
    fi
    return 0
}

complete -F _vethctl vethctl
