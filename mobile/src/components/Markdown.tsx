// Markdown from untrusted text (model output), rendered to native Text and
// View: marked's lexer parses; only the element types below are drawn. Raw
// HTML is shown as the literal text it is, images as links, and links are
// live only for http, https and mailto.
import { marked, type Token, type Tokens } from 'marked';
import { memo, useMemo, type ReactNode } from 'react';
import { Linking, Text, View } from 'react-native';
import { StyleSheet } from 'react-native-unistyles';

// safeHref returns the link target when it is http(s) or mailto, else null.
export function safeHref(href: string | undefined | null): string | null {
  if (!href) return null;
  const h = href.trim();
  // Control characters and whitespace inside a scheme are a classic trick
  // ("java\nscript:"): refuse anything but a plain, allowed scheme.
  const m = /^([a-z][a-z0-9+.-]*):/i.exec(h);
  if (!m) return null;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'http' && scheme !== 'https' && scheme !== 'mailto') return null;
  if (/[\u0000-\u001f\u007f]/.test(h)) return null;
  return h;
}

export const Markdown = memo(function Markdown({ text, testID }: { text: string; testID?: string }) {
  const tokens = useMemo(() => marked.lexer(text, { gfm: true }), [text]);
  return <View testID={testID}>{blocks(tokens, 'b')}</View>;
});

function blocks(tokens: Token[], key: string): ReactNode[] {
  return tokens.map((t, i) => block(t, `${key}.${i}`));
}

function block(t: Token, key: string): ReactNode {
  switch (t.type) {
    case 'space':
      return null;
    case 'heading':
      return (
        <Text key={key} style={[styles.p, styles.heading]} accessibilityRole="header">
          {inlines((t as Tokens.Heading).tokens, key)}
        </Text>
      );
    case 'paragraph':
      return (
        <Text key={key} style={styles.p}>
          {inlines((t as Tokens.Paragraph).tokens, key)}
        </Text>
      );
    case 'code':
      return (
        <View key={key} style={styles.codeBlock}>
          <Text style={styles.codeText} selectable>
            {(t as Tokens.Code).text}
          </Text>
        </View>
      );
    case 'blockquote':
      return (
        <View key={key} style={styles.quote}>
          {blocks((t as Tokens.Blockquote).tokens, key)}
        </View>
      );
    case 'list': {
      const list = t as Tokens.List;
      const start = typeof list.start === 'number' ? list.start : 1;
      return (
        <View key={key} style={styles.list}>
          {list.items.map((item, i) => (
            <View key={`${key}.${i}`} style={styles.listItem}>
              <Text style={styles.bullet}>{list.ordered ? `${start + i}.` : '•'}</Text>
              <View style={styles.listBody}>{listItem(item, `${key}.${i}`)}</View>
            </View>
          ))}
        </View>
      );
    }
    case 'hr':
      return <View key={key} style={styles.hr} />;
    case 'table': {
      const table = t as Tokens.Table;
      const rows = [table.header, ...table.rows];
      return (
        <View key={key} style={styles.table}>
          {rows.map((row, r) => (
            <View key={`${key}.${r}`} style={styles.tableRow}>
              {row.map((cell, c) => (
                <Text key={`${key}.${r}.${c}`} style={[styles.tableCell, r === 0 && styles.strong]}>
                  {inlines(cell.tokens, `${key}.${r}.${c}`)}
                </Text>
              ))}
            </View>
          ))}
        </View>
      );
    }
    case 'html':
    case 'text':
    default:
      // Raw HTML and anything unknown: the literal text, never markup.
      return (
        <Text key={key} style={styles.p}>
          {'tokens' in t && Array.isArray(t.tokens) ? inlines(t.tokens, key) : t.raw}
        </Text>
      );
  }
}

function listItem(item: Tokens.ListItem, key: string): ReactNode[] {
  // Loose items hold paragraphs; tight items hold text tokens with inlines.
  return item.tokens.map((t, i) => {
    const k = `${key}.${i}`;
    if (t.type === 'text') {
      const tt = t as Tokens.Text;
      return (
        <Text key={k} style={styles.p}>
          {tt.tokens ? inlines(tt.tokens, k) : tt.text}
        </Text>
      );
    }
    return block(t, k);
  });
}

function inlines(tokens: Token[] | undefined, key: string): ReactNode[] {
  if (!tokens) return [];
  return tokens.map((t, i) => inline(t, `${key}.${i}`));
}

function inline(t: Token, key: string): ReactNode {
  switch (t.type) {
    case 'strong':
      return (
        <Text key={key} style={styles.strong}>
          {inlines((t as Tokens.Strong).tokens, key)}
        </Text>
      );
    case 'em':
      return (
        <Text key={key} style={styles.em}>
          {inlines((t as Tokens.Em).tokens, key)}
        </Text>
      );
    case 'del':
      return (
        <Text key={key} style={styles.del}>
          {inlines((t as Tokens.Del).tokens, key)}
        </Text>
      );
    case 'codespan':
      return (
        <Text key={key} style={styles.codeSpan}>
          {(t as Tokens.Codespan).text}
        </Text>
      );
    case 'br':
      return <Text key={key}>{'\n'}</Text>;
    case 'link':
    case 'image': {
      const l = t as Tokens.Link | Tokens.Image;
      const href = safeHref(l.href);
      const label = t.type === 'link' ? inlines((t as Tokens.Link).tokens, key) : (l as Tokens.Image).text || l.href;
      if (!href) {
        return <Text key={key}>{label}</Text>;
      }
      return (
        <Text
          key={key}
          style={styles.link}
          accessibilityRole="link"
          // On the web build this is a real <a href> (the browser opens it).
          {...({ href, hrefAttrs: { target: '_blank', rel: 'noopener noreferrer nofollow' } } as object)}
          onPress={() => void Linking.openURL(href)}
        >
          {label}
        </Text>
      );
    }
    case 'escape':
      return <Text key={key}>{(t as Tokens.Escape).text}</Text>;
    case 'text': {
      const tt = t as Tokens.Text;
      return <Text key={key}>{tt.tokens ? inlines(tt.tokens, key) : unescapeEntities(tt.text)}</Text>;
    }
    case 'html':
    default:
      return <Text key={key}>{t.raw}</Text>;
  }
}

// marked escapes &, <, > … in text tokens for HTML output; these are
// native Text, so turn them back into the characters.
function unescapeEntities(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&');
}

const styles = StyleSheet.create((theme) => ({
  p: { color: theme.colors.text, fontSize: 16, lineHeight: 23, marginBottom: 6 },
  heading: { fontSize: 18, fontWeight: '700' },
  strong: { fontWeight: '700' },
  em: { fontStyle: 'italic' },
  del: { textDecorationLine: 'line-through' },
  link: { color: theme.colors.accent, textDecorationLine: 'underline' },
  codeSpan: { fontFamily: theme.font.mono, backgroundColor: theme.colors.bgSunken, color: theme.colors.text },
  codeBlock: {
    backgroundColor: theme.colors.bgSunken,
    borderRadius: theme.radius.small,
    padding: 10,
    marginBottom: 8,
  },
  codeText: { fontFamily: theme.font.mono, color: theme.colors.text, fontSize: 14 },
  quote: { borderLeftWidth: 3, borderLeftColor: theme.colors.border, paddingLeft: 10, marginBottom: 6 },
  list: { marginBottom: 6 },
  listItem: { flexDirection: 'row', gap: 8 },
  bullet: { color: theme.colors.textMuted, fontSize: 16, lineHeight: 23, minWidth: 14 },
  listBody: { flex: 1 },
  hr: { height: 1, backgroundColor: theme.colors.border, marginVertical: 10 },
  table: { borderWidth: 1, borderColor: theme.colors.border, borderRadius: theme.radius.small, marginBottom: 8 },
  tableRow: { flexDirection: 'row', borderBottomWidth: 1, borderBottomColor: theme.colors.border },
  tableCell: { flex: 1, padding: 6, color: theme.colors.text },
}));
